"""The one rule every run-time part applies to an environment (also copied, as source, into the
guard module a virtual environment runs at start-up: this file imports nothing but the standard
library and must stay that way).

`pin(environ, ...)` changes `environ` in place and returns what it replaced, for one line on stderr:

* CUDA_VISIBLE_DEVICES: set to the policy's mask when unset; a caller's explicit CPU run (""
  or "-1") is kept under cpu-runs "keep"; a caller's other mask is replaced in mode "enforce" and
  kept in mode "default".
* CUDA_DEVICE_ORDER: set to the policy's order when unset, and whenever the policy's mask is put in
  force (an index mask names the policy's GPU only in the policy's order); otherwise a caller's
  other order is replaced in mode "enforce" and kept in mode "default".
"""

CPU_RUN_VALUES = ("", "-1")


def pin(environ, visible_devices, device_order, cpu_runs="keep", mode="enforce"):
    """Put the policy in force in `environ`; the list of (name, old, new) it replaced."""
    replaced = []
    mask = environ.get("CUDA_VISIBLE_DEVICES")
    order = environ.get("CUDA_DEVICE_ORDER")
    set_mask = False
    if visible_devices is not None and mask != visible_devices:
        if mask is None:
            set_mask = True
        elif mask in CPU_RUN_VALUES and cpu_runs == "keep":
            pass  # an explicit CPU run: no GPU at all is never the forbidden one
        elif mode == "enforce":
            set_mask = True
    if order is None:
        environ["CUDA_DEVICE_ORDER"] = device_order
    elif order != device_order and (mode == "enforce" or set_mask):
        environ["CUDA_DEVICE_ORDER"] = device_order
        replaced.append(("CUDA_DEVICE_ORDER", order, device_order))
    if set_mask:
        environ["CUDA_VISIBLE_DEVICES"] = visible_devices
        if mask is not None:
            replaced.append(("CUDA_VISIBLE_DEVICES", mask, visible_devices))
    return replaced


def describe(replaced):
    """"replaced CUDA_VISIBLE_DEVICES='0' with '1'" (and the order, when both)."""
    return "; ".join("replaced %s=%r with %r" % item for item in replaced)
