//! Holds the examples; see the `[[example]]` entries of Cargo.toml.
