//! The PITR slicer: one per replica set, writes oplog chunks to storage.
