"""Saving the noise stream of a seeded layer with its weights."""

_KEY = "seed_generator_state"


class SavesSeedState:
    """Mixin: the layer's `seed_generator` state goes into saved weights.

    Keras saves a layer's variables but not the state of its
    `keras.random.SeedGenerator`, so a model loaded from `.keras` (or
    restored by `BackupAndRestore`) would restart its noise from the
    initial seed. With this mixin the state is saved and restored, and a
    loaded model draws exactly the noise the saved one would have drawn
    next: outputs are bit-identical and interrupted training resumes on
    the same stream.
    """

    def save_own_variables(self, store):
        super().save_own_variables(store)
        store[_KEY] = self.seed_generator.state.numpy()

    def load_own_variables(self, store):
        keys = list(store.keys())
        if _KEY in keys:
            self.seed_generator.state.assign(store[_KEY][...])
        rest = {k: store[k] for k in keys if k != _KEY}
        super().load_own_variables(rest)
