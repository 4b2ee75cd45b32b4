"""The measured examples quoted in README.md: sft-gemma, clip-digits, rl-arith."""
