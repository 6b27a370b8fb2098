"""The one rule every run-time part applies to an environment (also copied, as source, into the
guard module a virtual environment runs at start-up: this file imports nothing but the standard
library and must stay that way).

`pin(environ, ...)` changes `environ` in place and returns what it replaced, for one line on stderr:

* CUDA_DEVICE_ORDER: set to the policy's order; in mode "default" only when unset.
* CUDA_VISIBLE_DEVICES: set to the policy's mask when unset; a caller's explicit CPU run (""
  or "-1") is kept under cpu-runs "keep"; a caller's other mask is replaced in mode "enforce" and
  kept in mode "default".
"""

CPU_RUN_VALUES = ("", "-1")


def pin(environ, visible_devices, device_order, cpu_runs="keep", mode="enforce"):
    """Put the policy in force in `environ`; the list of (name, old, new) it replaced."""
    replaced = []
    order = environ.get("CUDA_DEVICE_ORDER")
    if order is None:
        environ["CUDA_DEVICE_ORDER"] = device_order
    elif order != device_order and mode == "enforce":
        environ["CUDA_DEVICE_ORDER"] = device_order
        replaced.append(("CUDA_DEVICE_ORDER", order, device_order))
    if visible_devices is None:
        return replaced
    mask = environ.get("CUDA_VISIBLE_DEVICES")
    if mask is None:
        environ["CUDA_VISIBLE_DEVICES"] = visible_devices
    elif mask == visible_devices:
        pass
    elif mask in CPU_RUN_VALUES and cpu_runs == "keep":
        pass  # an explicit CPU run: no GPU at all is never the forbidden one
    elif mode == "enforce":
        environ["CUDA_VISIBLE_DEVICES"] = visible_devices
        replaced.append(("CUDA_VISIBLE_DEVICES", mask, visible_devices))
    return replaced


def describe(replaced):
    """"replaced CUDA_VISIBLE_DEVICES='0' with '1'" (and the order, when both)."""
    return "; ".join("replaced %s=%r with %r" % item for item in replaced)
