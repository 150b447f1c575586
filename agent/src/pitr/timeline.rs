//! PITR timelines: restorable ranges and gaps computed from `pbmPITRChunks`.
