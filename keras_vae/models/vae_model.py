"""VAEModel: a functional Keras model trained by the ELBO or the IWAE bound."""

import keras
import tensorflow as tf

from keras_vae import _validation as v
from keras_vae import objectives
from keras_vae.layers.kl_regularizer import KLRegularizer
from keras_vae.models import graph as graph_lib
from keras_vae.models._nonfinite import NonFiniteGuard, make_counters
from keras_vae.models.inference import VAEInference


class _Parts:
    """Holds the encoder/decoder views of the graph out of Keras tracking.

    They share the VAEModel's layers and weights; keeping them in a plain
    object stops Keras from saving those weights a second time.
    """

    def __init__(self, vae_graph):
        self.graph = vae_graph
        self.functions = {}

    def loss_layers(self):
        """Each layer of the stages and decoder once (for layer losses:
        regularisers, `add_loss`); the KLRegularizers are not among them."""
        seen, layers = set(), []
        models = [level.stage for level in self.graph.levels]
        for model in models + [self.graph.decoder]:
            for layer in model.layers:
                # A KLRegularizer inside a stage (a later level reading an
                # earlier level's posterior parameters) is not a layer loss:
                # the objective has its KL already.
                if isinstance(layer, KLRegularizer):
                    continue
                if id(layer) not in seen:
                    seen.add(id(layer))
                    layers.append(layer)
        return layers


@keras.saving.register_keras_serializable(package="keras_vae")
class VAEModel(VAEInference, keras.Model):
    """A variational autoencoder built the functional way.

    ```none
    p(x, z) = p(x | z) p(z),   q(z | x) from the encoder
    ELBO(x) = E_q[log p(x | z)] - KL(q(z | x) || p(z)) <= log p(x)
    objective="elbo": loss = -(1/K) sum_k log p(x | z_k) + β KL     (+ layer losses)
    objective="iwae": loss = -log (1/K) sum_k p(x | z_k) p(z_k)^β / q(z_k | x)^β
    ```

    `inputs -> ... -> GaussianEncoderHead -> KLRegularizer ->
    ReparameterizedSample -> ... -> outputs` is read as: encoder (model
    inputs to the `(loc, scale)` entering the `KLRegularizer`), latent
    `z`, decoder (`z` and any model input it also reads, e.g. a label in a
    conditional VAE, to the likelihood parameters). The likelihood is the
    loss given to `compile` (a `keras_vae.losses` loss: it supplies
    `log_prob` and the distribution's mean). K samples per example are
    folded into the batch axis, so the decoder runs once per step on K·B
    rows whatever its layers.

    Several latents (a hierarchical VAE) are read from the graph too: each
    `LatentSample` layer with its `KLRegularizer` is a level, the levels
    are run in the order the graph imposes (a level's posterior and prior
    may read earlier levels' z), and the KL of the ELBO is the sum over
    levels, each also reported as the metric `kl_<sampling layer name>`.
    With K samples the levels after the first run on K copies of the
    batch (their posterior depends on the earlier draw).

    Data as for any Keras model: `x` alone (the target is `x`),
    `(inputs, targets)`, or `(inputs, targets, sample_weight)`. A
    conditional VAE passes `[x, y]` as inputs and `x` as targets.

    Metrics reported by `fit` / `evaluate`: `loss` (what is minimised),
    `elbo` (per-example ELBO, β = 1), `reconstruction` (-E_q log p(x|z))
    and `kl` (KL(q ‖ p), β = 1).

    Example:

    ```python
    vae = keras_vae.VAEModel(x_in, logits)
    vae.compile(optimizer="adam", loss=keras_vae.losses.BernoulliNLL())
    vae.fit(dataset, epochs=10)
    log_px = vae.log_likelihood(x_test, num_samples=1000)
    ```

    References: Kingma & Welling 2013; Rezende et al. 2014; Burda et al.
    2015 (IWAE).
    """

    def __init__(self, inputs, outputs, name=None, **kwargs):
        super().__init__(inputs, outputs, name=name, **kwargs)
        self._parts = _Parts(graph_lib.analyse(self))
        self._attach_encoder_priors()
        self.objective = "elbo"
        self.num_samples = 1
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.elbo_tracker = keras.metrics.Mean(name="elbo")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")
        self.kl_tracker = keras.metrics.Mean(name="kl")
        self.level_kl_trackers = []
        if len(self.levels) > 1:
            self.level_kl_trackers = [
                keras.metrics.Mean(name=f"kl_{level.name}")
                for level in self.levels
            ]
        self._nonfinite = make_counters()  # not logged; see _nonfinite.py

    def _attach_encoder_priors(self):
        """Gives priors defined by the encoder (VampPrior) their encoder."""
        for level in self.levels:
            prior = level.kl.prior
            if not hasattr(prior, "attach_encoder"):
                continue
            if level.z_deps or len(level.input_index) != 1:
                raise ValueError(
                    f"{type(prior).__name__} of '{level.kl.name}' needs a "
                    "latent whose posterior reads exactly one model input "
                    "and no other latent (its pseudo-inputs take that "
                    f"input's shape); '{level.name}' reads inputs "
                    f"{level.input_index} and levels {level.z_deps}."
                )
            n = level.num_params

            def encoder(u, stage=level.stage, n=n):
                return graph_lib.call_as_list(stage, u)[:n]

            prior.attach_encoder(
                encoder, tuple(self.inputs[level.input_index[0]].shape)
            )

    # ----------------------------------------------------------- pieces
    @property
    def levels(self):
        """The latent levels (`models.graph.Level`), in sampling order."""
        return self._parts.graph.levels

    def _single(self, what):
        if len(self.levels) != 1:
            raise ValueError(
                f"VAEModel '{self.name}' has {len(self.levels)} latent levels "
                f"({[l.name for l in self.levels]}), so it has no single "
                f"`{what}`; see `VAEModel.levels`."
            )
        return self.levels[0]

    @property
    def encoder(self):
        """`keras.Model`: model inputs -> posterior params of q(z | x)
        (`[loc, scale]` or `[logits]`); one-level models only."""
        self._single("encoder")
        return self._parts.graph.encoder

    @property
    def decoder(self):
        """`keras.Model`: `[z..., *conditions]` -> likelihood parameters."""
        return self._parts.graph.decoder

    @property
    def kl_layer(self):
        return self._single("kl_layer").kl

    @property
    def sampler(self):
        return self._single("sampler").sampler

    @property
    def latent_dim(self):
        return int(self._single("latent_dim").z_shape[-1])

    @property
    def likelihood(self):
        loss = getattr(self, "loss", None)
        if loss is None:
            raise ValueError(
                f"VAEModel '{self.name}' is not compiled: its likelihood is "
                "the loss given to compile(), e.g. "
                "compile(loss=keras_vae.losses.BernoulliNLL())."
            )
        return loss

    @property
    def metrics(self):
        return [
            self.loss_tracker,
            self.elbo_tracker,
            self.reconstruction_tracker,
            self.kl_tracker,
        ] + list(self.level_kl_trackers)

    # ----------------------------------------------------------- compile
    def compile(
        self,
        optimizer="adam",
        loss=None,
        objective="elbo",
        num_samples=1,
        jit_compile=True,
        **kwargs,
    ):
        """Configures training; XLA (`jit_compile=True`) by default.

        Args:
            optimizer: as for `keras.Model.compile`.
            loss: a likelihood loss from `keras_vae.losses` (anything with
                `log_prob(y_true, params)` and `mean(params)`).
            objective: `"elbo"` (default) or `"iwae"`.
            num_samples: K, the samples of z per example in each step.
            jit_compile: XLA-compile the train/test steps (default True;
                turned off when the model was built under a multi-replica
                `tf.distribute` strategy, whose cross-device step XLA
                cannot compile).
            **kwargs: other `keras.Model.compile` arguments
                (`steps_per_execution`, `run_eagerly`, ...). `metrics` are
                not supported: the model reports its own.
        """
        if loss is None or not (
            callable(getattr(loss, "log_prob", None))
            and callable(getattr(loss, "mean", None))
        ):
            raise ValueError(
                "Invalid value received for argument `loss`. Expected a "
                "likelihood loss from keras_vae.losses (with `log_prob` and "
                f"`mean`), e.g. BernoulliNLL(). Received: loss={loss!r}"
            )
        for key in ("metrics", "weighted_metrics", "loss_weights"):
            if kwargs.get(key):
                raise ValueError(
                    f"VAEModel.compile does not take `{key}`: the model "
                    "reports loss, elbo, reconstruction and kl itself. "
                    f"Received: {key}={kwargs[key]!r}"
                )
            kwargs.pop(key, None)
        self.objective = v.check_choice(
            "objective", objective, objectives.OBJECTIVES
        )
        shaped = [l.kl.name for l in self.levels
                  if l.kl.free_bits > 0 or l.kl.capacity is not None]
        if self.objective == "iwae" and shaped:
            raise ValueError(
                "objective='iwae' weighs log p(z) - log q(z) per sample and "
                "has no place for free bits or a KL capacity, which "
                f"KLRegularizer layers {shaped} set. Use objective='elbo'. "
                f"Received: objective={objective!r}"
            )
        relaxed = [l.name for l in self.levels if l.sampler.relaxed]
        if self.objective == "iwae" and relaxed:
            raise ValueError(
                "objective='iwae' needs the density q(z | x) of every "
                "training draw; the relaxed (Gumbel-softmax) samples of "
                f"{relaxed} have none in the discrete model. Use "
                f"objective='elbo'. Received: objective={objective!r}"
            )
        self.num_samples = v.check_positive_int("num_samples", num_samples)
        if jit_compile is True and self._replicas() > 1:
            # XLA cannot compile the cross-device step of a multi-replica
            # strategy (Keras wraps `strategy.run` in the jitted function and
            # XLA refuses variables on other devices), so under a strategy the
            # step runs as a plain tf.function graph.
            jit_compile = False
        super().compile(
            optimizer=optimizer, loss=loss, jit_compile=jit_compile, **kwargs
        )

    def _replicas(self):
        return self.distribute_strategy.num_replicas_in_sync

    def get_compile_config(self):
        config = super().get_compile_config()
        if config is not None:
            config["objective"] = self.objective
            config["num_samples"] = self.num_samples
        return config

    def compile_from_config(self, config):
        # As keras.Model does, through our compile (objective, num_samples).
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                     training=True):
        # Not used by our train/test steps; Keras calls it when it builds
        # the model symbolically (e.g. under a tf.distribute strategy), with
        # y=None for data that is only `x`: the target is the input.
        if y is None and x is not None:
            y = self._default_target(x)
        return super().compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
            training=training,
        )

    # ------------------------------------------------------ core maths
    def _split_data(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if y is None:
            y = self._default_target(x)
        return x, y, sample_weight

    def _default_target(self, x):
        if isinstance(x, (list, tuple)) and len(x) != 1:
            raise ValueError(
                f"VAEModel '{self.name}' has {len(x)} inputs, so the target "
                "cannot be taken to be the input: pass (inputs, targets), "
                "e.g. ([x, label], x) for a conditional VAE."
            )
        if isinstance(x, dict):
            raise ValueError(
                "VAEModel with dict inputs needs explicit targets: pass "
                "(inputs, targets)."
            )
        return x[0] if isinstance(x, (list, tuple)) else x

    def _input_list(self, x):
        """The model inputs as a list in `self.inputs` order (from one
        tensor, a list/tuple, or a dict keyed by the Input names)."""
        if isinstance(x, dict):
            names = [t.name for t in self.inputs]
            missing = [n for n in names if n not in x]
            if missing:
                raise ValueError(
                    f"VAEModel '{self.name}' inputs are named {names}; the "
                    f"dict of inputs lacks {missing}. Received keys: "
                    f"{sorted(x)}"
                )
            return [x[n] for n in names]
        return list(x) if isinstance(x, (list, tuple)) else [x]

    def _conditions(self, x):
        """The model inputs the decoder reads besides z (a label)."""
        xs = self._input_list(x)
        return [xs[i] for i in self._parts.graph.decoder_input_index]

    def _terms(self, x, y, num_samples, training, seed=None):
        """Everything the objectives need, for K = num_samples draws.

        Returns a dict of float32 tensors: `log_px_z` (K, B), `kl` (B,)
        (summed over levels), `kl_levels` (list of (B,)), `penalty` (the
        scalar β-weighted, free-bits/capacity KL term of the loss),
        `log_pz`, `log_qz` (K, B) (summed over levels) and
        `log_weight_prior` (K, B): sum over levels of β (log p - log q), as
        the IWAE objective weighs them. A `seed` (int tensor (2,)) fixes
        the noise instead of the samplers' streams. (Outputs a caller does
        not use are pruned from the traced graph.)
        """
        k = num_samples
        xs = self._input_list(x)
        batch = tf.shape(xs[0])[0]
        tiled = {}

        def model_input(j, repeat):
            if not repeat:
                return xs[j]
            if j not in tiled:
                tiled[j] = _repeat(xs[j], k)
            return tiled[j]

        zs, kls, penalties = [], [], []
        log_pz = log_qz = weighted = 0.0
        for i, level in enumerate(self.levels):
            rows_k = bool(level.z_deps)  # the stage runs on K*B rows
            kl_layer = level.kl
            p = None
            if not level.num_prior_params:
                # Before the stage's call on the data: a VampPrior runs the
                # stage on its pseudo-inputs, and the layer losses (activity
                # regularisers) kept for the objective must be the data's.
                p = kl_layer.prior_distribution()
            inputs = [model_input(j, rows_k) for j in level.input_index]
            inputs += [zs[d] for d in level.z_deps]
            outputs = graph_lib.call_as_list(
                level.stage, inputs, training=training
            )
            n, m = level.num_params, level.num_prior_params
            params = outputs[:n]
            prior_params = outputs[n:n + m] or None
            context = outputs[n + m:]
            level_seed = seed
            if seed is not None and i:
                level_seed = tf.cast(seed, tf.int64) + tf.constant(
                    [0, 1_000_003 * i], tf.int64
                )
            z, log_q = level.sampler.draw_latent(
                params, context, 1 if rows_k else k, level_seed,
                training=training,
            )
            zs.append(z)
            q = level.sampler.posterior(params)
            if p is None:
                p = kl_layer.prior_distribution(prior_params)
            # Shapes: per row of the stage, then (K, B).
            z_eval = z if rows_k else _unfold(z, k, batch)
            if log_q is not None and not rows_k:
                log_q = tf.reshape(log_q, (k, batch))
            kl = objectives.kl_divergence(q, p, z_eval, log_q)
            if log_q is None:
                log_q = q.log_prob(z_eval)
            lp = p.log_prob(z_eval)
            per_dim = None
            if kl_layer.free_bits > 0.0 and not level.sampler.sampled_kl:
                per_dim = objectives.kl_per_dimension(q, p)
            if rows_k:
                kl = tf.reduce_mean(tf.reshape(kl, (k, batch)), 0)
                log_q = tf.reshape(log_q, (k, batch))
                lp = tf.reshape(lp, (k, batch))
                if per_dim is not None:
                    per_dim = tf.reduce_mean(_unfold(per_dim, k, batch), 0)
            kls.append(kl)
            penalties.append(kl_layer.penalty(kl, per_dim))
            log_pz += lp
            log_qz += log_q
            weighted += kl_layer.kl_weight * (lp - log_q)

        graph = self._parts.graph
        decoder_in = [zs[d] for d in graph.decoder_z]
        decoder_in += [model_input(j, True) for j in graph.decoder_input_index]
        params = self.decoder(decoder_in, training=training)
        log_px_z = tf.reshape(
            self.likelihood.log_prob(_repeat(y, k), params), (k, batch)
        )
        return {
            "log_px_z": log_px_z,
            "kl": tf.add_n(kls),
            "kl_levels": kls,
            "penalty": tf.add_n(penalties),
            "log_pz": log_pz,
            "log_qz": log_qz,
            "log_weight_prior": weighted,
        }

    def _losses_and_metrics(self, x, y, sample_weight, training):
        k = self.num_samples
        iwae = self.objective == "iwae"
        t = self._terms(x, y, k, training)
        batch = tf.cast(tf.shape(t["kl"])[0], tf.float32)
        w = None
        if sample_weight is not None:
            w = tf.reshape(tf.cast(sample_weight, tf.float32), [-1])

        def batch_mean(values):  # Keras' "sum_over_batch_size"
            if w is not None:
                values = values * w
            return tf.reduce_sum(values) / batch

        recon = -tf.reduce_mean(t["log_px_z"], axis=0)
        elbo = objectives.elbo(t["log_px_z"], t["kl"])
        if iwae:
            log_w = t["log_px_z"] + t["log_weight_prior"]
            loss = -batch_mean(objectives.iwae(log_w))
        else:
            penalty = t["penalty"]
            if w is not None:
                penalty = penalty * tf.reduce_mean(w)
            loss = batch_mean(recon) + penalty
        extra = [l for layer in self._parts.loss_layers() for l in layer.losses]
        if extra:
            loss = loss + tf.add_n([tf.cast(l, tf.float32) for l in extra])
        values = {
            "elbo": batch_mean(elbo),
            "reconstruction": batch_mean(recon),
            "kl": batch_mean(t["kl"]),
        }
        if self.level_kl_trackers:
            values["kl_levels"] = [batch_mean(kl) for kl in t["kl_levels"]]
        return loss, values

    def _update_metrics(self, loss, values, batch):
        self.loss_tracker.update_state(loss, sample_weight=batch)
        self.elbo_tracker.update_state(values["elbo"], sample_weight=batch)
        self.reconstruction_tracker.update_state(
            values["reconstruction"], sample_weight=batch
        )
        self.kl_tracker.update_state(values["kl"], sample_weight=batch)
        for tracker, kl in zip(self.level_kl_trackers,
                               values.get("kl_levels", [])):
            tracker.update_state(kl, sample_weight=batch)
        results = {m.name: m.result() for m in self.metrics}
        if self._multi_worker():
            # Keras 3.15 reduces step outputs of a multi-worker strategy with
            # strategy.reduce("MEAN", v, axis=0), which fails on scalars:
            # give it shape (1,), it returns the scalar mean.
            results = {k: tf.reshape(r, [1]) for k, r in results.items()}
        return results

    def _multi_worker(self):
        strategy = self.distribute_strategy
        if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return False
        return bool(strategy.cluster_resolver.cluster_spec().as_dict())

    def train_step(self, data):
        x, y, sample_weight = self._split_data(data)
        with tf.GradientTape() as tape:
            loss, values = self._losses_and_metrics(
                x, y, sample_weight, training=True
            )
            # Gradients are summed over replicas: scale the per-replica loss.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = self.optimizer.scale_loss(loss / replicas)
        weights = self.trainable_weights
        grads = tape.gradient(scaled, weights)
        finite = tf.math.is_finite(loss)
        if self._replicas() == 1:
            # Skip the update of a non-finite step (see models/_nonfinite.py);
            # the optimizer's variables exist already (Keras builds them).
            tf.cond(
                finite,
                lambda: self.optimizer.apply_gradients(zip(grads, weights)),
                lambda: self.optimizer.iterations,
            )
        else:
            self.optimizer.apply_gradients(zip(grads, weights))
        for term, value in (("loss", loss), ("reconstruction",
                            values["reconstruction"]), ("kl", values["kl"])):
            self._nonfinite[term].update_state(
                tf.cast(tf.logical_not(tf.math.is_finite(value)), tf.float32)
            )
        return self._update_metrics(loss, values, tf.shape(y)[0])

    def fit(self, *args, **kwargs):
        """`keras.Model.fit`, plus a guard against non-finite steps.

        Steps whose loss is NaN/inf do not update the weights (on one
        replica), and after the epoch training stops with a
        `FloatingPointError` naming the term (reconstruction or KL).
        """
        if len(args) > 5:  # callbacks given positionally
            args = list(args)
            kwargs["callbacks"] = args.pop(5)
        callbacks = list(kwargs.pop("callbacks", None) or [])
        callbacks.append(NonFiniteGuard())
        return super().fit(*args, callbacks=callbacks, **kwargs)

    def test_step(self, data):
        x, y, sample_weight = self._split_data(data)
        loss, values = self._losses_and_metrics(
            x, y, sample_weight, training=False
        )
        return self._update_metrics(loss, values, tf.shape(y)[0])


def _unfold(t, k, batch):
    """(K*B, ...) sample-major rows -> (K, B, ...)."""
    return tf.reshape(t, tf.concat([[k, batch], tf.shape(t)[1:]], 0))


def _repeat(t, k):
    """`k` copies of a batch stacked along axis 0 (sample-major, as z)."""
    t = tf.convert_to_tensor(t)
    return tf.tile(t, tf.concat([[k], tf.ones_like(tf.shape(t)[1:])], 0))
