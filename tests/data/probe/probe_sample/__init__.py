"""A sample application package that the import probe tests install into a throwaway virtualenv."""

VERSION = "1.0"
