//! permessage-deflate (RFC 7692) without a compressor: negotiation, and the
//! inflaters that check compressed messages on their way back out.

pub mod inflate;
pub mod negotiate;

pub use inflate::{Inflater, Inflaters};
pub use negotiate::{negotiate, Agreement, Echo};
