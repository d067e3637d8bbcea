"""The LoRA adapters moved to the core (`interp.lora`: R2D training on any model uses them too);
this name keeps the organisms' imports working."""

from interp.lora import (ATTENTION_TARGETS, LoRAConfig, LoRALinear, adapter_tensors, attach, delta,  # noqa: F401
                         fingerprint, merge_into, merge_state, module_names)
