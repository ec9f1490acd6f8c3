//! Off Linux there is no shared-memory group (it needs /dev/shm and /proc): `ShmGroup` has no
//! values and `join` says so, so single-process training builds and runs everywhere.

use super::{DistError, JoinOptions};
use std::path::PathBuf;
use std::time::Duration;

/// No group can be formed on this platform: the type has no values.
#[derive(Debug)]
pub enum ShmGroup {}

/// Where the segment would live.
pub fn segment_path(run_id: &str) -> PathBuf {
    PathBuf::from(format!("wgolf-{run_id}"))
}

fn unsupported() -> DistError {
    DistError::InvalidArgument("multi-process training needs Linux (/dev/shm and /proc)".into())
}

impl ShmGroup {
    pub fn join(
        _run_id: &str,
        _rank: usize,
        _world: usize,
        _digest: &str,
        _timeout: Duration,
    ) -> Result<Self, DistError> {
        Err(unsupported())
    }
    pub fn join_with(_: &str, _: usize, _: usize, _: &str, _: &JoinOptions) -> Result<Self, DistError> {
        Err(unsupported())
    }
    pub fn rank(&self) -> usize {
        match *self {}
    }
    pub fn world(&self) -> usize {
        match *self {}
    }
    pub fn set_timeout(&mut self, _: Duration) {
        match *self {}
    }
    pub fn all_reduce_mean(&mut self, _: &mut [f32]) -> Result<(), DistError> {
        match *self {}
    }
    pub fn all_reduce_mean_across(
        &mut self,
        _: &mut [f32],
        _: &mut dyn FnMut(&mut [f32]) -> Result<(), DistError>,
    ) -> Result<(), DistError> {
        match *self {}
    }
    pub fn all_reduce_max_f64(&mut self, _: &mut [f64]) -> Result<(), DistError> {
        match *self {}
    }
    pub fn all_reduce_sum_f64(&mut self, _: &mut [f64]) -> Result<(), DistError> {
        match *self {}
    }
    pub fn all_gather(&mut self, _: &[f32], _: &[usize], _: &mut [f32]) -> Result<(), DistError> {
        match *self {}
    }
    pub fn broadcast_bytes(&mut self, _: &mut Vec<u8>) -> Result<(), DistError> {
        match *self {}
    }
    pub fn barrier(&mut self) -> Result<(), DistError> {
        match *self {}
    }
    pub fn abort(&mut self, _: &str) {
        match *self {}
    }
}
