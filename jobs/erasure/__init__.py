"""The erasure stage: select a jurisdiction's or a subject's records, erase them everywhere, verify, audit."""
