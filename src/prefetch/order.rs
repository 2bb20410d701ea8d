//! Where a layer's files go in its blob when a startup list is given.
