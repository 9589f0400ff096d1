//! Org templates (spec templates §1.3): `org.yaml` loading with `!include` expansion and its
//! limits, the template's shape, env requirements, prompt files, the generated config files,
//! the canvas layout, and the import plan (everything validated before the first insert).

pub mod layout;
pub mod paths;
pub mod plan;
pub mod prompts;
pub mod render;
pub mod template;
pub mod yaml;
