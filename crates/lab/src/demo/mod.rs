//! The demo services (`strait demo counting|dashboard`): plain HTTP apps the lab
//! puts behind sidecars, so the mesh path can be seen working (or failing).

pub mod counting;
pub mod dashboard;
