//! The request-response codec of [`crate::network::RPC_PROTOCOL`]: one CBOR value per stream
//! (the encoding libp2p's CBOR codec uses, so the wire is unchanged), read whole up to a size
//! limit. A request that is too big, or whose bytes are not a request, is read as a
//! [`WireRefusal`] rather than failing the stream: libp2p reports a failed read to nobody,
//! and the swarm must know which peer sent it. A connection that broke mid-request is still
//! an I/O error, and no peer's fault.
//!
//! What it does not do: judge a request that decodes (a delivery's envelopes are checked where
//! they are taken), or name the peer (the swarm knows who sent it).

use std::io;

use libp2p::StreamProtocol;
use libp2p::futures::{AsyncRead, AsyncReadExt, AsyncWrite};
use libp2p::request_response::{self, cbor::codec::Codec as CborCodec};

use crate::network::{MAX_REQUEST_SIZE, MAX_RESPONSE_SIZE, Request, Response};

/// Why a peer's request was refused before anything looked at it: only a dishonest (or
/// broken) peer sends one. A request cut short, as a connection that closes mid-way leaves
/// it, is none of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireRefusal {
    /// More bytes than [`MAX_REQUEST_SIZE`].
    #[error("a request of more than {MAX_REQUEST_SIZE} bytes")]
    Oversized,
    /// Complete, but not a request.
    #[error("a malformed request: {0}")]
    Malformed(String),
    /// A request of a kind this node does not know: a newer peer's, no misconduct.
    #[error("a request this node does not know: {0}")]
    Unknown(String),
}

/// What the codec reads: a request, or why the bytes were none.
pub type Inbound = Result<Request, WireRefusal>;

/// The codec: libp2p's CBOR codec over a request read whole first.
#[derive(Clone)]
pub struct RpcCodec {
    cbor: CborCodec<Request, Response>,
}

impl std::fmt::Debug for RpcCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcCodec").finish_non_exhaustive()
    }
}

impl Default for RpcCodec {
    /// The codec with dta's limits.
    fn default() -> Self {
        Self {
            cbor: CborCodec::default()
                .set_request_size_maximum(MAX_REQUEST_SIZE)
                .set_response_size_maximum(MAX_RESPONSE_SIZE),
        }
    }
}

/// Decodes a whole request: [`WireRefusal::Oversized`] past the limit,
/// [`WireRefusal::Malformed`] when the bytes are complete but no request. Bytes that end
/// early stay an I/O error (`UnexpectedEof`): the peer may simply have gone.
pub async fn decode_request(codec: &mut RpcCodec, bytes: &[u8]) -> io::Result<Inbound> {
    if bytes.len() as u64 > MAX_REQUEST_SIZE {
        return Ok(Err(WireRefusal::Oversized));
    }
    let mut reader = bytes;
    let protocol = &crate::network::RPC_PROTOCOL;
    match request_response::Codec::read_request(&mut codec.cbor, protocol, &mut reader).await {
        Ok(request) => Ok(Ok(request)),
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => Err(error),
        // serde's words for a variant the enum lacks, as the CBOR decoder passes them on.
        Err(error) if error.to_string().contains("unknown variant") => {
            Ok(Err(WireRefusal::Unknown(error.to_string())))
        }
        Err(error) => Ok(Err(WireRefusal::Malformed(error.to_string()))),
    }
}

#[async_trait::async_trait]
impl request_response::Codec for RpcCodec {
    type Protocol = StreamProtocol;
    type Request = Inbound;
    type Response = Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Inbound>
    where
        T: AsyncRead + Unpin + Send,
    {
        // One byte past the limit tells "too big" from "exactly the limit".
        let mut bytes = Vec::new();
        io.take(MAX_REQUEST_SIZE + 1)
            .read_to_end(&mut bytes)
            .await?;
        decode_request(self, &bytes).await
    }

    async fn read_response<T>(
        &mut self,
        protocol: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        self.cbor.read_response(protocol, io).await
    }

    async fn write_request<T>(
        &mut self,
        protocol: &StreamProtocol,
        io: &mut T,
        request: Inbound,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let request = request.map_err(|refusal| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a refusal is not sent: {refusal}"),
            )
        })?;
        self.cbor.write_request(protocol, io, request).await
    }

    async fn write_response<T>(
        &mut self,
        protocol: &StreamProtocol,
        io: &mut T,
        response: Response,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.cbor.write_response(protocol, io, response).await
    }
}

#[cfg(test)]
mod tests {
    use libp2p::futures::executor::block_on;

    use super::*;

    fn decode(bytes: &[u8]) -> io::Result<Inbound> {
        block_on(decode_request(&mut RpcCodec::default(), bytes))
    }

    fn encoded(request: &Request) -> Vec<u8> {
        let mut bytes = Vec::new();
        block_on(request_response::Codec::write_request(
            &mut RpcCodec::default(),
            &crate::network::RPC_PROTOCOL,
            &mut bytes,
            Ok(request.clone()),
        ))
        .expect("encodes");
        bytes
    }

    #[test]
    fn a_request_decodes_as_written() {
        let request = Request::Deliver {
            blocks: vec![serde_bytes::ByteBuf::from(vec![1, 2, 3])],
        };
        assert_eq!(decode(&encoded(&request)).expect("read"), Ok(request));
    }

    #[test]
    fn bytes_that_are_no_request_are_refused_as_malformed() {
        for garbage in [&[0xffu8; 64][..], &b"\x63\xff\xfe\xfd"[..], &b"\x05"[..]] {
            let read = decode(garbage).expect("read whole");
            assert!(
                matches!(read, Err(WireRefusal::Malformed(_))),
                "{garbage:?}: {read:?}"
            );
        }
    }

    #[test]
    fn a_request_of_an_unknown_kind_is_no_misconduct() {
        // A map of one key, as a newer peer's request variant with fields is encoded.
        let read = decode(b"\xa1\x69Handshake\xa0").expect("read whole");
        assert!(matches!(read, Err(WireRefusal::Unknown(_))), "{read:?}");
    }

    #[test]
    fn a_request_over_the_limit_is_refused_as_oversized() {
        let request = Request::Deliver {
            blocks: vec![serde_bytes::ByteBuf::from(vec![
                0u8;
                MAX_REQUEST_SIZE as usize
            ])],
        };
        let read = decode(&encoded(&request)).expect("read whole");
        assert_eq!(read, Err(WireRefusal::Oversized));
    }

    #[test]
    fn a_request_cut_short_is_no_misconduct() {
        let whole = encoded(&Request::Deliver {
            blocks: vec![serde_bytes::ByteBuf::from(vec![7u8; 100])],
        });
        let error = decode(&whole[..whole.len() / 2]).expect_err("cut short");
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }
}
