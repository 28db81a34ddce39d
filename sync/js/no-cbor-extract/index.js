// cbor-x catches this and uses its JavaScript decoder.
throw new Error("cbor-extract is not installed")
