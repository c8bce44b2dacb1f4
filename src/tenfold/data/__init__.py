"""tenfold.data"""
