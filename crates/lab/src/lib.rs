//! strait-lab
pub mod topology;
