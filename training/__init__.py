"""ttc's training arm: process reward models with TRL (+ DeepSpeed, peft) and the tiny policies of the embedded default."""
