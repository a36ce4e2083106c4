//! medgate-upstream against real loopback upstreams (HTTP and HTTPS on 127.0.0.1:0).

mod resilience;
mod support;
mod tls;
