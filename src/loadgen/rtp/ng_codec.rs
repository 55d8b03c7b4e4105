//! The crate's `ng` codec behind the scenario's [`NgCodec`].
//! (Placeholder until the `ng` branch is merged: every reply is refused.)

use super::control::NgCodec;

pub struct Ng;

impl NgCodec for Ng {
    fn offer(&self, _: &str, _: &str, _: &str, _: &str) -> Vec<u8> {
        Vec::new()
    }
    fn answer(&self, _: &str, _: &str, _: &str, _: &str, _: &str) -> Vec<u8> {
        Vec::new()
    }
    fn delete(&self, _: &str, _: &str, _: &str) -> Vec<u8> {
        Vec::new()
    }
    fn reply(&self, _: &[u8]) -> Result<(String, Result<Option<String>, String>), String> {
        Err("the ng codec is not merged yet".into())
    }
}
