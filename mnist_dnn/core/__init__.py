"""The small core every part stands on: config, user errors, atomic writes, interrupts, backend, memory estimate."""
