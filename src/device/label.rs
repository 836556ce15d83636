//! Reading the label at the start of a data device.

use super::BlockDevice;
use crate::error::{Error, Result};
use crate::format::LABEL_LENGTH;
use crate::format::label::{Label, LabelError};

/// Reads and checks the label of `device`.
pub fn read_label(device: &dyn BlockDevice) -> Result<Label> {
    let path = device.info().path.display().to_string();
    let bytes = device.read_at(0, LABEL_LENGTH)?;
    Label::decode(&bytes).map_err(|error| match error {
        LabelError::Blank => Error::NotFormatted(path),
        LabelError::Foreign { found } => {
            Error::ForeignDevice(format!("{path} starts with {found:?}"))
        }
        LabelError::Corrupt(e) => Error::corruption(format!("label of {path}: {e}")),
        LabelError::Newer { found, supported } => Error::NewerFormat {
            what: format!("store on {path}"),
            found,
            supported,
        },
    })
}
