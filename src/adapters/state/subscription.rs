//! Subscriptions to changes of the state store by segment-aware JSON Pointer pattern.
