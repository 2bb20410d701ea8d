//! The filesystem tree: one per layer as read from its tar, and the merge of all layers with OCI
//! whiteouts and opaque directories applied.
