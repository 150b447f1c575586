//! Point-in-time recovery: the slicer that keeps the oplog flowing to storage as
//! chunks indexed in `pbmPITRChunks`, and the timelines (restorable ranges and gaps)
//! that `list`, `status`, `restore --time` and deletion read from those chunks.

pub mod restore_pitr;
pub mod restore_plan;
pub mod restore_replay;
pub mod slicer;
pub mod slicer_chunk;
pub mod slicer_lock;
pub mod slicer_start;
pub mod timeline;
