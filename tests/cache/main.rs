#![cfg(all(feature = "cache", feature = "testing"))]
