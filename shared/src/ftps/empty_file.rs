//! Writing an empty file on the partner (a flow's `done_marker` after an upload): `STOR`
//! with no data. Nothing can be half-written in zero bytes, so no temporary name is used.

use super::classify::ReplyTo;
use super::connection::{Connection, Operation};
use super::control::check_line;
use super::error::FtpsError;

/// `STOR path` with an empty data stream.
pub(crate) struct WriteEmpty<'a> {
    pub(crate) path: &'a str,
}

impl Operation for WriteEmpty<'_> {
    type Output = ();

    async fn run(&mut self, conn: &mut Connection) -> Result<(), FtpsError> {
        let step = format!("marker {}", self.path);
        check_line(&step, self.path)?;
        let data = conn
            .open_data(&step, &format!("STOR {}", self.path), ReplyTo::NewPath)
            .await?;
        data.finish_upload(conn.control(), &step, ReplyTo::NewPath)
            .await
            .map(drop)
    }
}
