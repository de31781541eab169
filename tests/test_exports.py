import vectorstore
import vectorstore.errors


def test_all_sorted_and_complete():
    assert vectorstore.__all__ == sorted(vectorstore.__all__)
    for name in vectorstore.__all__:
        assert getattr(vectorstore, name) is not None
    public_errors = [n for n in vectorstore.errors.__all__ if n != "IndexError_"]
    assert set(public_errors) <= set(vectorstore.__all__)


def test_every_error_is_a_vectorstore_error():
    for name in vectorstore.errors.__all__:
        assert issubclass(getattr(vectorstore.errors, name), vectorstore.VectorStoreError)
