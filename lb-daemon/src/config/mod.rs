//! Configuration: the TOML file, parsed and validated into typed structures.
