"""One adapter per wire: bytes in → stream events; stream output → bytes/frames out."""
