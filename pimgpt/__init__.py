"""pimgpt: DRAM processing-in-memory GPT accelerator framework."""
__version__ = "0.1.0"
