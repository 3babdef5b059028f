//! What only `iter8-render` needs: speed-ups for rendering thousands of routemaps in one short
//! process. The controller links none of this.
//!
//! - [`yaml`]: a block-YAML writer for routes, byte-identical to `serde-saphyr` (checked by
//!   property tests), falling back to `serde-saphyr` for shapes it does not handle.
//! - [`Rayon`]: runs the offline loader's per-document and per-routemap steps on all cores.

pub mod yaml;

use routemap_index::offline::Mapper;
use routing_core::HttpRoute;

/// The route as YAML, as `serde-saphyr` writes it ([`HttpRoute::to_yaml`]), through the fast
/// writer when the route's shape allows.
pub fn route_yaml(route: &HttpRoute) -> String {
    yaml::to_block_yaml(route).unwrap_or_else(|| route.to_yaml())
}

/// Maps on all cores with rayon's work stealing, so a core slowed by another process does not
/// hold up the rest; small inputs stay on the calling thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rayon;

impl Mapper for Rayon {
    fn map<T: Sync, R: Send>(&self, items: &[T], f: impl Fn(&T) -> R + Sync + Send) -> Vec<R> {
        use rayon::prelude::*;
        if items.len() < 64 {
            return items.iter().map(f).collect();
        }
        items.par_iter().with_min_len(8).map(f).collect()
    }
}
