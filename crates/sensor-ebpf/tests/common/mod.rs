//! Shared by the sensor's root tests.

#![allow(dead_code, clippy::unwrap_used)]

#[path = "../../../../tests/programs/support.rs"]
mod support;
#[allow(unused_imports)]
pub use support::{cc, root_or_skip};

use custos_sensor_ebpf::{ProcessSensor, Record};
use std::time::Duration;

/// Polls until `want` returns true for a record (or 5 s pass).
pub fn wait_for(sensor: &ProcessSensor, mut want: impl FnMut(&Record) -> bool) -> Option<Record> {
    let mut found = None;
    sensor
        .poll(Duration::from_secs(5), |r| {
            let r = r.expect("decodes");
            if want(&r) {
                found = Some(r);
                return false;
            }
            true
        })
        .unwrap();
    found
}
