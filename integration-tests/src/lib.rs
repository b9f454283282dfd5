//! Harness placeholder
