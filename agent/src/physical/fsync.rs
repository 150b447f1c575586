//! fsyncLock: placeholder, filled below.
