//! Tests of the engine as a whole: the SPEC §5.9 scenarios and the properties.

mod harness;
mod properties;
mod regressions;
mod restart;
mod scenarios;
