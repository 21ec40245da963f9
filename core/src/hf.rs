//! Reading Hugging Face model directories (to be written).
