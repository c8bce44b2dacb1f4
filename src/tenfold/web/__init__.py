"""tenfold.web"""
