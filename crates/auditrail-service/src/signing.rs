//! Signed checkpoints: the C2SP note of an org's tree at a size.

use auditrail_core::Hash;
use auditrail_core::note::{Checkpoint, origin_for};

use crate::{Service, ServiceError, ServiceResult};

/// The signed note of `org`'s tree at `size` with `root`.
pub fn sign_note(svc: &Service, org: &str, size: u64, root: Hash) -> ServiceResult<String> {
    let cp = Checkpoint {
        origin: origin_for(&svc.config.origin_prefix, org),
        size,
        root,
    };
    svc.signer
        .sign(&cp.body())
        .map_err(|e| ServiceError::Internal(format!("signing the checkpoint: {e}")))
}
