//! Content sniffing: which reader a file needs. (Being written.)
