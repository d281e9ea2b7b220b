"""MADE: a masked autoencoder whose output i depends on inputs < i only.

The network of one inverse-autoregressive-flow step (`IAFSample`). It is
a Keras 3 layer on purpose: `tfp.bijectors.AutoregressiveNetwork` is a
`tf_keras` (Keras 2) layer, so inside a Keras 3 model its weights would not
be tracked, trained or saved. The masks are TFP's (Germain et al., 2015;
`tfp.bijectors.masked_autoregressive._create_degrees` with
`input_order="left-to-right"`, `hidden_degrees="equal"`):

```none
degree of input d          m_0(d) = d,  d = 1 .. L
degree of hidden unit k    m_l(k) = max(min m_{l-1}, ceil(k (L - 1) / (H_l + 1)))
input/hidden -> hidden     mask[j, k] = m_{l-1}(j) <= m_l(k)
hidden -> output d         mask[k, d] = m_last(k) <  d
```

so output d is a function of inputs 1 .. d - 1. The context enters through
unmasked kernels into the first hidden layer and into the outputs: with
the first hidden layer alone, output 1 (which sees no input and so no
hidden unit) would be a constant, and the first coordinate of every IAF
step could not depend on x. Masked kernels are `kernel * mask` at every
call: the masked-out entries get no gradient and never matter.
"""

import itertools

import keras
import numpy as np
import tensorflow as tf


def made_degrees(event_size, hidden_units):
    """Degrees of the input and hidden units (TFP's "equal" assignment)."""
    degrees = [np.arange(1, event_size + 1)]
    for units in hidden_units:
        min_degree = min(int(np.min(degrees[-1])), event_size - 1)
        degrees.append(np.maximum(
            min_degree,
            np.ceil(np.arange(1, units + 1) * (event_size - 1) / (units + 1)),
        ).astype(np.int64))
    return degrees


def made_masks(event_size, hidden_units):
    """float32 masks of the hidden kernels and of the output kernel."""
    degrees = made_degrees(event_size, hidden_units)
    masks = [inp[:, None] <= out for inp, out in itertools.pairwise(degrees)]
    masks.append(degrees[-1][:, None] < degrees[0])
    return [m.astype("float32") for m in masks]


class MADE(keras.layers.Layer):
    """Autoregressive network x (N, L) [, context (N, C)] -> (out_0, out_1).

    Each output is (N, L); `out_j[:, d]` depends on `x[:, :d]` only.
    Hidden layers are ReLU; an optional context (N, C) is added, through
    unmasked kernels, to the first hidden layer and to both outputs. The
    output kernels (context ones included) start small (`output_stddev`),
    so at initialisation the outputs are nearly their biases: `out_0 ≈ 0`
    and `out_1 ≈ gate_bias`.

    Args:
        hidden_units: sizes of the hidden layers.
        gate_bias: initial bias of the second output (the IAF gate logit).
        output_stddev: standard deviation of the output kernels at
            initialisation.
    """

    def __init__(self, hidden_units, gate_bias=0.0, output_stddev=0.01,
                 **kwargs):
        super().__init__(**kwargs)
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.gate_bias = float(gate_bias)
        self.output_stddev = float(output_stddev)

    def build(self, x_shape, context_shape=None):
        self.event_size = int(x_shape[-1])
        # NumPy, not tensors: `build` may run inside a trace.
        self._masks = made_masks(self.event_size, self.hidden_units)
        self.hidden_kernels, self.hidden_biases = [], []
        fan_in = self.event_size
        for i, units in enumerate(self.hidden_units):
            self.hidden_kernels.append(self.add_weight(
                shape=(fan_in, units), initializer="glorot_uniform",
                name=f"hidden_kernel_{i}",
            ))
            self.hidden_biases.append(self.add_weight(
                shape=(units,), initializer="zeros", name=f"hidden_bias_{i}",
            ))
            fan_in = units
        out_init = keras.initializers.RandomNormal(stddev=self.output_stddev)
        self.context_kernel = None
        self.output_context_kernels = []
        if context_shape is not None:
            context_size = int(context_shape[-1])
            self.context_kernel = self.add_weight(
                shape=(context_size, self.hidden_units[0]),
                initializer="glorot_uniform", name="context_kernel",
            )
            self.output_context_kernels = [
                self.add_weight(
                    shape=(context_size, self.event_size),
                    initializer=out_init, name=f"output_context_kernel_{j}",
                )
                for j in range(2)
            ]
        self.output_kernels, self.output_biases = [], []
        for j, bias in enumerate((0.0, self.gate_bias)):
            self.output_kernels.append(self.add_weight(
                shape=(fan_in, self.event_size), initializer=out_init,
                name=f"output_kernel_{j}",
            ))
            self.output_biases.append(self.add_weight(
                shape=(self.event_size,),
                initializer=keras.initializers.Constant(bias),
                name=f"output_bias_{j}",
            ))

    def call(self, x, context=None):
        if (context is None) != (self.context_kernel is None):
            raise ValueError(
                "MADE was built "
                f"{'with' if self.context_kernel is not None else 'without'}"
                " a context input and must be called the same way."
            )
        h = tf.cast(x, self.compute_dtype)
        if context is not None:
            context = tf.cast(context, self.compute_dtype)
        for i, (kernel, bias) in enumerate(
            zip(self.hidden_kernels, self.hidden_biases)
        ):
            h = tf.matmul(h, kernel * self._masks[i]) + bias
            if i == 0 and context is not None:
                h = h + tf.matmul(context, self.context_kernel)
            h = tf.nn.relu(h)
        outputs = []
        for j, (kernel, bias) in enumerate(
            zip(self.output_kernels, self.output_biases)
        ):
            out = tf.matmul(h, kernel * self._masks[-1]) + bias
            if context is not None:
                out = out + tf.matmul(context, self.output_context_kernels[j])
            outputs.append(out)
        return tuple(outputs)

    def get_config(self):
        config = super().get_config()
        config.update({
            "hidden_units": list(self.hidden_units),
            "gate_bias": self.gate_bias,
            "output_stddev": self.output_stddev,
        })
        return config
