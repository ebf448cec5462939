//! The protobuf codec of our service: prost's, except that a request that does not decode is the
//! caller's mistake (INVALID_ARGUMENT, not worth retrying as it is) rather than INTERNAL, which is
//! what gRPC's status-code guide reserves for the server's own failures.

use std::marker::PhantomData;

use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

#[derive(Debug, Clone, Default)]
pub struct ServiceCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Codec for ServiceCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ServiceDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::default().encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        ServiceDecoder(ProstDecoder::default())
    }
}

#[derive(Debug, Clone, Default)]
pub struct ServiceDecoder<U>(ProstDecoder<U>);

impl<U: prost::Message + Default> Decoder for ServiceDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0.decode(buf).map_err(|e| {
            Status::invalid_argument(format!(
                "the message is not a valid protobuf encoding of this method's request: {}",
                e.message()
            ))
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
