def test_fail(client):
    assert client.request("/").status == 999
