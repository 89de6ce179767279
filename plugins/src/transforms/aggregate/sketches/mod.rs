//! Summaries of many values in bounded memory: [`DdSketch`] for
//! percentiles (1 % relative error) and [`Hll`] for distinct counts (1.6 %
//! standard error at the default precision). Both merge (session windows
//! join) and encode into the state.

pub mod ddsketch;
pub mod hll;

pub use ddsketch::DdSketch;
pub use hll::Hll;
