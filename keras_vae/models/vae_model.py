"""VAEModel: a functional Keras model trained by the ELBO or the IWAE bound."""

import keras
import tensorflow as tf

from keras_vae import _validation as v
from keras_vae import objectives
from keras_vae.models import graph as graph_lib
from keras_vae.models import missing as missing_lib
from keras_vae.models import trace as trace_lib
from keras_vae.models._nonfinite import (
    NonFiniteGuard,
    apply_unless_not_finite,
    make_counters,
)
from keras_vae.models.inference import VAEInference
from keras_vae.models.replica_step import ReplicaXLAMixin


class _Parts:
    """Holds the graph views and compiled functions out of Keras tracking.

    The stage/decoder sub-models share the VAEModel's layers and weights;
    keeping them in a plain object stops Keras from saving those weights a
    second time. `trackers` holds the metric trackers of the names an
    objective reports beyond the standard ones, made when first reported.
    """

    def __init__(self, vae_graph):
        self.graph = vae_graph
        self.functions = {}
        self.trackers = {}
        # The likelihood given to the last `compile`, set before the
        # objective's `check` and `build` run (Keras sets `loss` later).
        self.likelihood = None

    def loss_layers(self):
        """Each layer of the stages and decoder once (for layer losses:
        regularisers, `add_loss`). The KLRegularizers inside are markers
        that add none (the objective has the KL). The quantizers are in
        neither (the trace calls them between); their losses come with
        the trace (`LevelTrace.losses`)."""
        seen, layers = set(), []
        models = [level.stage for level in self.graph.levels]
        for model in models + [self.graph.decoder]:
            for layer in model.layers:
                if id(layer) not in seen:
                    seen.add(id(layer))
                    layers.append(layer)
        return layers


@keras.saving.register_keras_serializable(package="keras_vae")
class VAEModel(ReplicaXLAMixin, VAEInference, keras.Model):
    """A variational autoencoder built the functional way.

    ```none
    p(x, z) = p(x | z) p(z),   q(z | x) from the encoder
    ELBO(x) = E_q[log p(x | z)] - KL(q(z | x) || p(z)) <= log p(x)
    objective=ELBO(K): loss = -(1/K) sum_k log p(x | z_k) + β KL   (+ layer losses)
    objective=IWAE(K): loss = -log (1/K) sum_k p(x | z_k) p(z_k)^β / q(z_k | x)^β
    ```

    `inputs -> ... -> GaussianEncoderHead -> KLRegularizer ->
    ReparameterizedSample -> ... -> outputs` is read as: encoder (model
    inputs to the `(loc, scale)` entering the `KLRegularizer`), latent
    `z`, decoder (`z` and any model input it also reads, e.g. a label in a
    conditional VAE, to the likelihood parameters). The likelihood is the
    loss given to `compile` (a `keras_vae.losses` loss: it supplies
    `log_prob` and the distribution's mean). K samples per example are
    folded into the batch axis, so the decoder runs once per step on K·B
    rows whatever its layers. Latents may have any shape: `(B, L)`, or a
    feature map `(B, h, w, C)` from `GaussianEncoderHead(flatten=False)`.

    Several latents (a hierarchical VAE) are read from the graph too: each
    `LatentSample` layer with its `KLRegularizer` is a level, the levels
    are run in the order the graph imposes (a level's posterior and prior
    may read earlier levels' z), and the KL of the ELBO is the sum over
    levels, each also reported as the metric `kl_<sampling layer name>`.
    With K samples the levels after the first run on K copies of the
    batch (their posterior depends on the earlier draw).

    Everything the model computes goes through one forward pass,
    `VAEModel.trace` (see `keras_vae.models.trace`); the objective (an
    `keras_vae.objectives.Objective`) turns the trace into the loss.

    Data as for any Keras model: `x` alone (the target is `x`),
    `(inputs, targets)`, or `(inputs, targets, sample_weight)`. A
    conditional VAE passes `[x, y]` as inputs and `x` as targets.

    Metrics reported by `fit` / `evaluate`: `loss` (what is minimised),
    `elbo` (per-example ELBO, β = 1), `reconstruction` (-E_q log p(x|z))
    and `kl` (KL(q ‖ p), β = 1).

    Vector-quantised latents: a quantizer (`VectorQuantizer`,
    `ResidualVectorQuantizer`, `FiniteScalarQuantizer`) between encoder
    and decoder is a latent level on its own, with no `KLRegularizer`:
    a deterministic one-hot posterior and a uniform prior over the codes,
    so the KL is log K per position and the ELBO log p(x | z_q) - log K ·
    positions (`keras_vae.models.quantized`); the loss adds the layer's
    commitment (and codebook) losses. `fit` also reports `perplexity` and
    `codebook_usage`; `encode_codes(x)` and `decode_codes(codes)` map data
    to integer codes and codes to the decoder's output. With K samples
    the draws are identical (the ELBO's value does not change; IWAE is
    refused). `sample` refuses: a uniform draw of codes is not a useful
    sample (fit a prior over the codes and decode its draws).

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
        for level in self.levels:
            # A marker inside the model: the objective computes the KL.
            level.kl.adds_loss = False
        self._attach_encoder_priors()
        self.objective = objectives.ELBO()
        # Holds the objective's own layer (Objective.build); a tracked list,
        # so that a new compile can untrack the last objective's layer.
        self.objective_layers = []
        self.missing_values = None
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
            if prior is None or not prior.needs_encoder:
                continue
            if level.z_deps or len(level.input_index) != 1:
                raise ValueError(
                    f"{type(prior).__name__} of '{level.kl.name}' needs a "
                    "latent whose posterior reads exactly one model input "
                    "and no other latent (its pseudo-inputs take that "
                    f"input's shape); '{level.name}' reads inputs "
                    f"{list(level.input_index)} and levels "
                    f"{list(level.z_deps)}."
                )
            n = level.num_params

            def encoder(u, stage=level.stage, n=n):
                return graph_lib.call_as_list(stage, u)[:n]

            prior.attach_encoder(
                encoder, tuple(self.inputs[level.input_index[0]].shape)
            )

    # ----------------------------------------------------------- pieces
    @property
    def graph(self):
        """The model read as a VAE (`keras_vae.models.graph.VAEGraph`):
        levels, decoder, and which model inputs each reads."""
        return self._parts.graph

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
        """The `KLRegularizer` of the latent (one-level models)."""
        return self._single("kl_layer").kl

    @property
    def sampler(self):
        """The sampling layer (`LatentSample`) of the latent (one-level
        models)."""
        return self._single("sampler").sampler

    @property
    def latent_dim(self):
        """The size of the latent's last axis (one-level models)."""
        return self._single("latent_dim").z_shape[-1]

    @property
    def latent_shape(self):
        """The shape of one z, without the batch axis (one-level models):
        `(L,)`, or `(h, w, C)` with None for sizes known only at run time."""
        return tuple(self._single("latent_shape").z_shape)

    @property
    def num_samples(self):
        """K of the objective."""
        return self.objective.num_samples

    @property
    def likelihood(self):
        """The likelihood loss given to `compile` (p(x | z)); available to
        the objective's `check` and `build` during `compile`."""
        loss = self._parts.likelihood
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
        ] + list(self.level_kl_trackers) + list(self._parts.trackers.values())

    # ----------------------------------------------------------- compile
    def compile(
        self,
        optimizer="adam",
        loss=None,
        objective="elbo",
        num_samples=None,
        jit_compile=True,
        missing_values=None,
        **kwargs,
    ):
        """Configures training; XLA (`jit_compile=True`) by default.

        Args:
            optimizer: as for `keras.Model.compile`.
            loss: a likelihood loss from `keras_vae.losses` (anything with
                `log_prob(y_true, params)` and `mean(params)`).
            objective: a `keras_vae.objectives.Objective` (`ELBO(K)`,
                `IWAE(K)`, or a subclass of your own), or the aliases
                `"elbo"` (default) / `"iwae"`.
            num_samples: K, the samples of z per example in each step, for
                an objective given by name (default: the objective's own,
                1 for ELBO, 5 for IWAE).
            jit_compile: XLA-compile the train/test steps (default True).
                Under a multi-replica `tf.distribute` strategy each
                replica's forward and backward pass is compiled and the
                all-reduce and update run outside XLA
                (`keras_vae.models.replica_step`); a step XLA cannot
                compile falls back to a plain graph with a warning.
            missing_values: None (default: the data is complete; NaN in
                NumPy data is an error), or the value that marks a missing
                entry, e.g. `float("nan")`. The likelihood then scores only
                the observed entries (log p(x_obs | z)), the encoder sees 0
                where an entry is missing (NaN, and so the mask, through a
                `keras_vae.MissingIndicator`), `log_likelihood` estimates
                log p(x_obs) and `impute` fills the missing entries (see
                `keras_vae.models.missing`). With `objective="iwae"` this is
                MIWAE (Mattei & Frellsen 2019).
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
        if num_samples is not None:
            v.check_positive_int("num_samples", num_samples)
        self.missing_values = missing_lib.check_missing_values(missing_values)
        if self.missing_values is not None:
            # Refuses an input read by a MissingIndicator and another layer.
            missing_lib.indicator_inputs(self)
        objective = objectives.get(objective, num_samples)
        self._parts.likelihood = loss
        objective.check(self)
        self.objective = objective
        self._track_objective_layer(objective.build(self))
        own = self._own_optimizer()
        if own is not None and not own.built:
            with self.distribute_strategy.scope():
                own.build(self.objective_layer.trainable_weights)
        self._parts.trackers.clear()
        # Under a multi-replica strategy `jit_compile=True` is honoured by
        # compiling each replica's forward and backward pass and keeping the
        # all-reduce and the update outside XLA (`ReplicaXLAMixin`,
        # keras_vae/models/replica_step.py); Keras alone would jit the whole
        # cross-device step, which XLA refuses.
        self._parts.functions.clear()
        super().compile(
            optimizer=optimizer, loss=loss, jit_compile=jit_compile, **kwargs
        )

    @property
    def objective_layer(self):
        """The compiled objective's state for this model (a learned
        baseline, a discriminator, a frozen feature model; the layer
        `Objective.build(model)` returned at `compile`), or None. It
        trains, saves and loads with the model and is never exported."""
        return self.objective_layers[0] if self.objective_layers else None

    def _own_optimizer(self):
        """The optimizer of the objective layer's own weights (its
        `optimizer` attribute), or None: the model's trains them."""
        return getattr(self.objective_layer, "optimizer", None)

    def _track_objective_layer(self, layer):
        """Tracks `layer` (from `Objective.build`) in place of an earlier
        objective's, whose weights leave the model."""
        self.objective_layers.clear()
        if layer is not None:
            if not isinstance(layer, keras.layers.Layer):
                raise TypeError(
                    f"{type(self.objective).__name__}.build(model) must "
                    "return a keras.layers.Layer or None. Received: "
                    f"{layer!r}"
                )
            self.objective_layers.append(layer)

    def _replicas(self):
        return self.distribute_strategy.num_replicas_in_sync

    def get_compile_config(self):
        config = super().get_compile_config()
        if config is not None:
            config["objective"] = keras.saving.serialize_keras_object(
                self.objective
            )
            config["missing_values"] = self.missing_values
        return config

    def compile_from_config(self, config):
        # As keras.Model does, through our compile (objective included).
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        # Each optimizer built with the weights it updates (an objective's
        # own weights, e.g. FactorVAE's discriminator, go to its own), so
        # the model optimizer's saved state loads.
        self._build_optimizers()

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                     training=True):
        # Not used by our train/test steps; Keras calls it when it builds
        # the model symbolically (e.g. under a tf.distribute strategy), with
        # y=None for data that is only `x`: the target is the input.
        if y is None and x is not None:
            y = self.default_target(x)
        return super().compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
            training=training,
        )

    # ------------------------------------------------------ core maths
    def _split_data(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if y is None:
            y = self.default_target(x)
        return x, y, sample_weight

    def default_target(self, x):
        """The data the likelihood scores when only inputs are given: the
        input itself (one input); refuses several inputs or a dict, whose
        targets must be passed explicitly."""
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

    def trace(self, x, y=None, num_samples=1, mode="sample", training=False,
              seed=None, decode=True, num_rows=None, latent_shapes=None,
              posterior_params=None):
        """The forward trace: every latent level for K samples, decoded.

        See `keras_vae.models.trace.run_trace`; returns a
        `keras_vae.models.trace.Trace`. `y`: the targets scored by the
        likelihood (gives `trace.log_px_z`). `seed`: None (the samplers'
        own noise streams) or an int tensor of shape (2,) (fixed draws).
        """
        return trace_lib.run_trace(
            self, x, y, num_samples=num_samples, mode=mode,
            training=training, seed=seed, decode=decode, num_rows=num_rows,
            latent_shapes=latent_shapes, posterior_params=posterior_params,
        )

    def compute_objective(self, data, training=True, tape=None):
        """`(loss, metrics)` of the compiled objective on a batch of data.

        `loss` is the scalar the train step differentiates (the objective's
        loss, a surrogate where its estimator needs one, plus the layers'
        own losses such as activity regularisers); `metrics` the dict `fit`
        reports (`elbo`, `reconstruction`, `kl`, ...). For custom training
        loops and gradient checks:

        ```python
        with tf.GradientTape() as tape:
            loss, metrics = vae.compute_objective(x)
        grads = tape.gradient(loss, vae.trainable_weights)
        ```

        `tape`: the persistent `tf.GradientTape` recording the step, handed
        to the objective (`Objective.compute`) for estimators that read
        gradients of their own terms; the train step passes its own.
        """
        if not self.compiled:
            raise ValueError(
                f"VAEModel '{self.name}' is not compiled: compute_objective "
                "needs the likelihood (`loss`) and `objective` given to "
                "compile(), e.g. compile(loss=keras_vae.losses."
                "BernoulliNLL(), objective='elbo')."
            )
        x, y, sample_weight = self._split_data(data)
        trace = trace_lib.run_trace(
            self, x, y, num_samples=self.objective.num_samples,
            training=training,
            gradient_taps=self.objective.gradient_taps,
        )
        loss, values = self.objective.compute(
            trace, self.objective_layer, sample_weight, tape)
        extra = [l for layer in self._parts.loss_layers() for l in layer.losses]
        extra += [l for level in trace.levels for l in level.losses]
        if extra:
            loss = loss + tf.add_n([tf.cast(l, tf.float32) for l in extra])
        return loss, {**values, **self._codebook_metrics(trace)}

    def _codebook_metrics(self, trace):
        """Each quantizer's `usage_metrics` (`perplexity`,
        `codebook_usage`, per stage for residual VQ), read after the
        forward pass: the training batch's, recorded by the quantizer's
        training call; at evaluation the batch's own codes give the
        perplexity. Suffixed `_<layer name>` when there are several."""
        pairs = [(level, record)
                 for level, record in zip(self.levels, trace.levels)
                 if level.quantizer is not None]
        out = {}
        for level, record in pairs:
            codes = None if trace.training else level.quantizer.codes(
                record.params[0])
            suffix = "" if len(pairs) == 1 else f"_{level.name}"
            for key, value in level.quantizer.usage_metrics(codes).items():
                out[key + suffix] = value
        return out

    def _update_metrics(self, loss, values, batch):
        self.loss_tracker.update_state(loss, sample_weight=batch)
        trackers = {m.name: m for m in self.metrics}
        for name, value in values.items():
            if name not in trackers:
                trackers[name] = self._new_tracker(name)
            trackers[name].update_state(value, sample_weight=batch)
        results = {m.name: m.result() for m in self.metrics}
        if self._multi_worker():
            # Keras 3.15 reduces step outputs of a multi-worker strategy with
            # strategy.reduce("MEAN", v, axis=0), which fails on scalars:
            # give it shape (1,), it returns the scalar mean.
            results = {k: tf.reshape(r, [1]) for k, r in results.items()}
        return results

    def _new_tracker(self, name):
        """A `Mean` for a metric the objective reports beyond the standard
        ones (the names are the keys `Objective.compute` returns). Made
        when the train or test step is first traced, outside the graph
        (`tf.init_scope`), so the function is not traced again for it."""
        with tf.init_scope():
            tracker = keras.metrics.Mean(name=name)
        self._parts.trackers[name] = tracker
        return tracker

    def _multi_worker(self):
        strategy = self.distribute_strategy
        if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return False
        return bool(strategy.cluster_resolver.cluster_spec().as_dict())

    def train_step(self, data):
        # Two halves: under a strategy with XLA the first is compiled per
        # replica and the second (all-reduce, update) runs outside it
        # (ReplicaXLAMixin); on one device Keras compiles both at once.
        return self.apply_gradients_and_metrics(
            data, self.compute_gradients(data))

    def compute_gradients(self, data):
        """The replica's forward and backward pass: `(grads, loss,
        metrics)` for the model's trainable weights."""
        # Persistent: an objective may read gradients of its own terms
        # from the tape (Objective.compute's `tape`) before this one.
        with tf.GradientTape(persistent=True) as tape:
            loss, values = self.compute_objective(data, training=True,
                                                  tape=tape)
            # Gradients are summed over replicas: scale the per-replica loss.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = self.optimizer.scale_loss(loss / replicas)
        return tape.gradient(scaled, self.trainable_weights), loss, values

    def apply_gradients_and_metrics(self, data, outputs):
        """The update (optimizer groups, non-finite skip; the all-reduce
        under a strategy) and the metric updates."""
        grads, loss, values = outputs
        self._apply_update(grads, self.trainable_weights, loss)
        self._count_nonfinite(loss, values)
        return self._update_metrics(loss, values, self._batch_size(data))

    def compute_test_outputs(self, data):
        """The compiled half of `test_step`: `(loss, metrics)`."""
        return self.compute_objective(data, training=False)

    def update_test_metrics(self, data, outputs):
        """The uncompiled half of `test_step`: the metric updates."""
        loss, values = outputs
        return self._update_metrics(loss, values, self._batch_size(data))

    def _objective_owned(self):
        """ids of the weights the objective layer's own optimizer trains
        (see `Objective.build`); empty when the model's optimizer trains
        every weight."""
        if self._own_optimizer() is None:
            return set()
        return {id(w) for w in self.objective_layer.trainable_weights}

    def _optimizer_groups(self, grads, weights):
        """`[(optimizer, grads, weights)]`: the objective's own weights go
        to the objective's optimizer when it has one, the rest to the
        model's."""
        owned = self._objective_owned()
        if not owned:
            return [(self.optimizer, list(grads), list(weights))]
        split = {True: ([], []), False: ([], [])}
        for g, w in zip(grads, weights):
            split[id(w) in owned][0].append(g)
            split[id(w) in owned][1].append(w)
        own_grads = split[True][0]
        scale = getattr(self.optimizer, "dynamic_scale", None)
        if scale is not None and own_grads and own_grads[0] is not None:
            # Mixed precision: the model's LossScaleOptimizer scaled the
            # loss; it unscales its own group, the objective's is unscaled
            # here (a non-finite result skips the step with the loss's).
            own_grads = [None if g is None else g / tf.cast(scale, g.dtype)
                         for g in own_grads]
        return [(self.optimizer, *split[False]),
                (self._own_optimizer(), own_grads, split[True][1])]

    def _apply_update(self, grads, weights, loss):
        """The optimizer step, skipped (on one replica) when `loss` is not
        finite: the weights and the optimizers' state keep their values
        (models/_nonfinite.py says how, without a `tf.cond`)."""
        groups = self._optimizer_groups(grads, weights)
        if self._replicas() != 1:
            for optimizer, g, w in groups:
                optimizer.apply_gradients(zip(g, w))
            return
        finite = tf.math.is_finite(loss)
        if len(groups) > 1 and getattr(self.optimizer, "dynamic_scale",
                                       None) is not None:
            # Loss scaling can overflow the objective's own gradients at a
            # finite loss: that step is skipped too.
            finite = tf.logical_and(finite, tf.reduce_all([
                tf.reduce_all(tf.math.is_finite(g))
                for g in groups[1][1] if g is not None]))
        apply_unless_not_finite(groups, finite)

    def _count_nonfinite(self, loss, values):
        """Counts the step in the non-finite counters of its terms: the
        loss, and the `reconstruction` and `kl` metrics when the objective
        reports them (see `Objective.compute`)."""
        terms = [("loss", loss)] + [
            (t, values[t]) for t in ("reconstruction", "kl") if t in values]
        for term, value in terms:
            self._nonfinite[term].update_state(
                tf.cast(tf.logical_not(tf.math.is_finite(value)), tf.float32)
            )

    def _batch_size(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return tf.shape(self._input_list(x)[0])[0]

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
        if self.missing_values is None:
            data = list(args[:2]) + [kwargs.get("x"), kwargs.get("y")]
            missing_lib.refuse_nan(
                [a for d in data if d is not None
                 for a in tf.nest.flatten(d)], "fit",
            )
        self._build_optimizers()
        return super().fit(*args, callbacks=callbacks, **kwargs)

    def train_on_batch(self, *args, **kwargs):
        """`keras.Model.train_on_batch`; the optimizers are built before
        the step is first traced, as in `fit`."""
        self._build_optimizers()
        return super().train_on_batch(*args, **kwargs)

    def _build_optimizers(self):
        """Creates the optimizers' state before the train step is traced.

        Keras builds an optimizer inside the first trace of the train
        function when no distribution strategy is set, and a `tf.function`
        that creates variables is traced twice; building first halves the
        tracing of the first `fit` (the seconds before its first step).
        Needs the weights: a model whose layers are not all built yet (or
        an objective layer that builds on its first call) is left as Keras
        would."""
        layers = list(self.layers) + [
            l for l in [self.objective_layer] if l is not None]
        if not self.built or not all(layer.built for layer in layers):
            return
        weights = self.trainable_variables
        with self.distribute_strategy.scope():
            for optimizer, _, group in self._optimizer_groups(
                    [None] * len(weights), weights):
                if optimizer is not None and not optimizer.built:
                    optimizer.build(group)

    def test_step(self, data):
        return self.update_test_metrics(data, self.compute_test_outputs(data))
