//! Network policy and names, as pure logic (no root, no kernel): what a network rule says and
//! how it is stored ([`rules`]), the form the kernel's cgroup programs match
//! ([`KernelRule`]), and the names DNS answers gave to addresses ([`dns`], [`names`]).

pub mod dns;
pub mod names;
pub mod rules;

pub use dns::{parse_response, Answer, DnsError};
pub use names::Names;
pub use rules::{
    compile, compile_with, describe, Action, Cidr, Direction, KernelRule, NetError, NetRule,
    NetRuleStore, NewNetRule, PortRange, Transport, CONFIG_ID_BASE,
};
