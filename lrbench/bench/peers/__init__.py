"""Published kernels timed beside ours as references (targets, not implementations of the op)."""
