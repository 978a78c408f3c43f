"""Sans-IO implementations of the PandABlocks-server control and data protocols."""
