"""`python main.py demo` and its bundled sample service: not the product; imported only by the demo command and the tests."""
