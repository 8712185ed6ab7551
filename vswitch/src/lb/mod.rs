//! Load balancing: Maglev consistent hashing over backends, a flow hash, session affinity.
