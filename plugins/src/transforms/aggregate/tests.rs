//! Behaviour of the whole transform.
