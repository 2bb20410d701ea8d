//! The image's merged tree read from its source layers, for the resolver.
