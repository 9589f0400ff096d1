//! Secrets, model/provider and org API tokens over real HTTP against the real router, on both
//! databases: values encrypted at rest, the override order, who may read values, the merged
//! environment of the provision request, org tokens' lifecycle, and no value in the log.

mod logs;
mod org_tokens;
mod values;
