"""XLA under a `tf.distribute` strategy: each replica's step compiled, the
cross-replica reduction and the update outside it.

Keras turns `jit_compile` off under any `tf.distribute` strategy (keras PR
18716), because its train function puts `strategy.run` *inside* the
jitted function: XLA then sees the variables of every replica
("resource ... located in device replica_1", keras#19005) and the
`merge_call` of the optimizer (keras#20763: mixed precision's
`LossScaleOptimizer` calls it inside a `Cond`). Neither needs to be in the
compiled part. This module splits the step where XLA can compile it:

```none
function(iterator)                         tf.function, not compiled
  data = next(iterator)                    one global batch, split per replica
  strategy.run(replica_step, data)         in each replica:
      outputs = compiled(data)               tf.function(jit_compile=True):
                                             forward, loss, metrics, gradients
      logs = finish(data, outputs)           plain graph, replica context:
                                             optimizer.apply_gradients (all-reduce
                                             and merge_call), metric updates
  reduce the logs over replicas            cross-replica context
```

The compiled part is traced once per replica device and reads that
replica's copy of each variable; it may assign variables whose aggregation
is `"none"` (the samplers' `SeedGenerator` state, BatchNorm statistics): each
replica updates its own copy, as in Keras' uncompiled step. An assignment
that needs a `merge_call` (a variable with `aggregation="mean"`) cannot be
compiled: tracing fails, and the step falls back to the uncompiled replica
function with a warning that quotes the reason (`jit_compile` is then
honoured everywhere else: predict and the single-device steps).

The loop over the iterator (`steps_per_execution`, the end of the data) is
the one of Keras' TensorFlow trainer, so `fit`, `evaluate`,
`train_on_batch` and the callbacks see the function they expect.

A model uses it by overriding Keras' public `make_train_function` /
`make_test_function` (the `ReplicaXLAMixin` below does) and providing the two
halves of its step: `compute_gradients(data) -> outputs` (compiled) and
`apply_gradients_and_metrics(data, outputs) -> logs` (not compiled).
"""

import re
import warnings

import tensorflow as tf


def multi_replica(strategy):
    """Whether `strategy` runs more than one replica or on several workers
    (the cases where Keras would turn XLA off)."""
    if strategy.num_replicas_in_sync > 1:
        return True
    return _multi_worker(strategy)


def _multi_worker(strategy):
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    resolver = strategy.cluster_resolver
    return bool(resolver is not None and resolver.cluster_spec().as_dict())


def _optionals_to_none(data):
    """Keras passes missing parts of the data (y, sample_weight) as empty
    `tf.experimental.Optional`s; steps expect None."""
    return tf.nest.map_structure(
        lambda t: None if isinstance(t, tf.experimental.Optional) else t, data
    )


def reduce_logs(strategy, logs):
    """The per-replica logs of a step as one value each: the mean over
    replicas (what Keras' `fit` reports for a distributed step). With
    several workers, scalars must arrive with shape (1,) (`replica_step`
    reshapes them): the collective mean over axis 0 is then the mean over
    replicas."""
    multi_worker = _multi_worker(strategy)

    def reduce(value):
        if multi_worker:
            return strategy.reduce("MEAN", value, axis=0)
        if not isinstance(value, tf.distribute.DistributedValues):
            return value
        return tf.reduce_mean(
            tf.stack(strategy.experimental_local_results(value)), axis=0
        )

    return tf.nest.map_structure(reduce, logs)


def _reason(error):
    """The line of a trace error that says why (not its traceback)."""
    text = str(error)
    where = re.search(r"Exception encountered when calling ([\w.]+)", text)
    where = f" (in {where.group(1)})" if where else ""
    if "merge_call" in text:
        return ("its computation calls merge_call" + where + ": a variable "
                "whose aggregation is not 'none' is assigned in it, or an "
                "optimizer is applied in it")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f"{type(error).__name__}{where}: {lines[-1][:300] if lines else ''}"


def make_step_function(model, compiled, finish, jit_compile=True,
                       what="train"):
    """A Keras step function (`function(iterator) -> logs`) whose replica
    computation `compiled(data)` is XLA-compiled and whose
    `finish(data, outputs)` runs uncompiled in the replica context.

    Args:
        model: the Keras model (its `distribute_strategy` and
            `steps_per_execution` are read).
        compiled: `data -> outputs` (nested tensors), run in each replica
            under `tf.function(jit_compile=jit_compile)`.
        finish: `(data, outputs) -> logs` (a dict of tensors), run in each
            replica without XLA: the optimizer update (its all-reduce and
            `merge_call`) and metric updates belong here.
        jit_compile: compile `compiled` with XLA (False: the same step
            uncompiled, as after a fallback).
        what: "train" or "test", for the fallback warning.

    Returns:
        `function(iterator)` for `model.train_function` /
        `model.test_function`: takes a `tf.data` / distributed iterator (or
        an iterable of batches, as `train_on_batch` passes) and returns the
        logs of the last step; at the end of the data it raises as Keras'
        function does (`OutOfRangeError` or `StopIteration`, which `fit`
        ends the epoch on). The function's `uses_xla()` says whether the
        replica's part is compiled (False after a fallback).
    """
    strategy = model.distribute_strategy
    multi_worker = _multi_worker(strategy)
    state = {"jit": bool(jit_compile)}

    def build(jit):
        # Uncompiled, the part is traced into the step's graph (a nested
        # tf.function cannot hold a merge_call either).
        part = (tf.function(compiled, jit_compile=True, reduce_retracing=True)
                if jit else compiled)

        def replica_step(data):
            data = _optionals_to_none(data)
            try:
                outputs = part(data)
            except Exception:
                state["part_failed"] = jit  # the compiled part's trace
                raise
            # Nothing of the update before the batch is there: TensorFlow
            # orders stateful ops only per resource, so the optimizer's
            # step counter (which reads no data) would otherwise also count
            # the call that finds the end of the data.
            inputs = [t for t in tf.nest.flatten(data) if t is not None]
            with tf.control_dependencies(inputs):
                logs = finish(data, outputs)
            if multi_worker:
                logs = tf.nest.map_structure(
                    lambda t: tf.reshape(t, [1]) if t.shape.rank == 0 else t,
                    logs)
            return logs

        @tf.autograph.experimental.do_not_convert
        def one_step_on_data(data):
            outputs = strategy.run(replica_step, args=(data,))
            return reduce_logs(strategy, outputs)

        # Batches given directly (train_on_batch) run in a function of
        # their own; from an iterator, the step is traced into the loop's.
        one_step_alone = tf.function(one_step_on_data, reduce_retracing=True)
        one_step = one_step_on_data

        @tf.autograph.experimental.do_not_convert
        def multi_step_on_iterator(iterator):
            steps = model.steps_per_execution
            if steps == 1:
                return tf.experimental.Optional.from_value(
                    one_step(iterator.get_next()))
            # Keras' loop: up to `steps` steps while the data lasts, the
            # logs of the last one (their spec is known after the first).
            empty = tf.experimental.Optional.empty(None)

            def cond(i, outputs, next_inputs):
                return tf.logical_and(tf.less(i, steps),
                                      next_inputs.has_value())

            def body(i, outputs, next_inputs):
                new = tf.experimental.Optional.from_value(
                    one_step(next_inputs.get_value()))
                empty._element_spec = new.element_spec
                following = tf.cond(
                    tf.less(i + 1, steps),
                    iterator.get_next_as_optional,
                    lambda: next_inputs,
                )
                return i + 1, new, following

            _, final, _ = tf.while_loop(
                cond, body,
                loop_vars=[tf.constant(0), empty,
                           iterator.get_next_as_optional()],
            )
            final._element_spec = empty.element_spec
            return final

        multi_step = tf.function(multi_step_on_iterator,
                                 reduce_retracing=True)
        return one_step_alone, multi_step

    functions = {"steps": build(state["jit"])}

    def fall_back(error):
        warnings.warn(
            f"The per-replica XLA {what} step of '{model.name}' could not "
            f"be compiled: {_reason(error)}. It runs uncompiled under this "
            "strategy (jit_compile is still used on a single device and in "
            "predict). Pass jit_compile=False to compile() to silence this.",
            stacklevel=3,
        )
        state["jit"] = False
        functions["steps"] = build(False)

    def function(iterator):
        if not state.get("ready"):
            _build_optimizer(model)
            state["ready"] = True
        one_step, multi_step = functions["steps"]
        if isinstance(iterator,
                      (tf.data.Iterator, tf.distribute.DistributedIterator)):
            if state["jit"] and not state.get("traced"):
                # Trace before running: if XLA cannot compile the replica's
                # part (a merge_call inside it), fall back without having
                # consumed data. Errors elsewhere are the caller's.
                try:
                    multi_step.get_concrete_function(iterator)
                except Exception as error:  # noqa: BLE001 - re-raised
                    if not state.pop("part_failed", False):
                        raise
                    fall_back(error)
                    one_step, multi_step = functions["steps"]
                state["traced"] = True
            outputs = multi_step(iterator)
            if not outputs.has_value():
                raise StopIteration
            return outputs.get_value()
        outputs = None
        for _, data in zip(range(model.steps_per_execution), iterator):
            try:
                outputs = one_step(data)
            except Exception as error:  # noqa: BLE001 - re-raised
                # A trace error: nothing ran, the batch can be retried.
                if not state.pop("part_failed", False):
                    raise
                fall_back(error)
                one_step, multi_step = functions["steps"]
                outputs = one_step(data)
        return outputs

    function.uses_xla = lambda: state["jit"]
    return function


def _build_optimizer(model):
    """Creates the optimizer's variables before the step is traced (inside
    the trace they would be created under the step's control
    dependencies)."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and not optimizer.built:
        with model.distribute_strategy.scope():
            optimizer.build(model.trainable_variables)


def make_train_function(model):
    """`model.train_function` for a multi-replica strategy with the
    replica's step XLA-compiled (see the module docstring). The model
    provides `compute_gradients(data)` and
    `apply_gradients_and_metrics(data, outputs)`."""
    return make_step_function(
        model, model.compute_gradients, model.apply_gradients_and_metrics,
        jit_compile=model.jit_compile, what="train",
    )


def make_test_function(model):
    """`model.test_function` likewise: the replica's loss and metrics
    compiled (`compute_test_outputs(data)`), the metric updates outside
    (`update_test_metrics(data, outputs)`)."""
    return make_step_function(
        model, model.compute_test_outputs, model.update_test_metrics,
        jit_compile=model.jit_compile, what="test",
    )


class ReplicaXLAMixin:
    """Mixin for a Keras model (TensorFlow backend): under a multi-replica
    or multi-worker strategy with `jit_compile=True`, `fit` / `evaluate` /
    `train_on_batch` compile each replica's step with XLA and keep the
    cross-replica reduction and the update outside it. On one replica, or
    with `jit_compile=False`, Keras' own functions are used.

    The model must keep `jit_compile=True` under the strategy (Keras'
    `compile` does so when asked explicitly) and provide:

    - `compute_gradients(data) -> outputs`: the replica's forward pass,
      loss, metric values and gradients (compiled);
    - `apply_gradients_and_metrics(data, outputs) -> logs`: the update and
      the metric updates (not compiled; `optimizer.apply_gradients` does
      the all-reduce);
    - `compute_test_outputs(data) -> outputs` and
      `update_test_metrics(data, outputs) -> logs` for `evaluate`.
    """

    def _replica_xla(self):
        return bool(self.jit_compile) and not self.run_eagerly and (
            multi_replica(self.distribute_strategy))

    def make_train_function(self, force=False):
        if self.train_function is not None and not force:
            return self.train_function
        if not self._replica_xla():
            return super().make_train_function(force=force)
        self.train_function = make_train_function(self)
        return self.train_function

    def make_test_function(self, force=False):
        if self.test_function is not None and not force:
            return self.test_function
        if not self._replica_xla():
            return super().make_test_function(force=force)
        self.test_function = make_test_function(self)
        return self.test_function
