//! strait-proxy
